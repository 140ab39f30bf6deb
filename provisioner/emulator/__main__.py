"""``python -m provisioner.emulator``."""

from provisioner.emulator.cli import main

raise SystemExit(main())
