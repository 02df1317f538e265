from loadbench.sim.cli import main

raise SystemExit(main())
