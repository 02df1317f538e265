from loadbench.cli import main

raise SystemExit(main())
