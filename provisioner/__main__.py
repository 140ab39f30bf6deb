"""``python -m provisioner`` runs the command line."""

from provisioner.cli import main

raise SystemExit(main())
