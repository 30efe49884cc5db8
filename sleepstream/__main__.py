from sleepstream.cli import main

raise SystemExit(main())
