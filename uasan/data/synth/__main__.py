"""``python -m uasan.data.synth``: see :func:`uasan.data.synth.cli.main`."""

from uasan.data.synth.cli import main

raise SystemExit(main())
