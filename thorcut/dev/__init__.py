"""The local demo stack of ``thorcut dev up``/``down`` (only in a checkout): Redis (:mod:`.stack`),
the Thor backend and its job runners (:mod:`.backend`), the page build (:mod:`.frontend`), the
processes it started (:mod:`.procs`) and the state file that records them (:mod:`.state`)."""
