"""`python -m pointengine ...` is the `pointengine` command."""

from .cli import main

raise SystemExit(main())
