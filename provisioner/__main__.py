"""``python -m provisioner`` runs the command line."""

from provisioner.cli.main import main

raise SystemExit(main())
