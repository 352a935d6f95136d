from pipeline.service.server import main

raise SystemExit(main())
