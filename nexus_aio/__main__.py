from nexus_aio.cli import main

raise SystemExit(main())
