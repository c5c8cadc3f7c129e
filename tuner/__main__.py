"""``python -m tuner``: the ``tuner`` command, for an environment whose scripts folder is not on
PATH (a venv used without activating it, ``pip install --user``)."""

from tuner.cli import main

if __name__ == "__main__":
    main(prog_name="tuner")
