from spotrec.cli import main

raise SystemExit(main())
