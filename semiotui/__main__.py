from semiotui.tui.cli import main

raise SystemExit(main())
