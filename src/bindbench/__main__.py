from bindbench.cli import entry

entry()
