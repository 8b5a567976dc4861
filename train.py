"""Entry point from a clone: `python train.py regularizer=l1` (= the `reglab-train` script)."""

from reglab.cli import main

if __name__ == "__main__":
    main()
