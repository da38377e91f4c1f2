from pyrunc.cli import main

raise SystemExit(main())
