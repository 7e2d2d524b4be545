from exactcomp.cli.main import entry

entry()
