from trial_image.cli import main

raise SystemExit(main())
