"""Host configuration: the records (:mod:`.model`), reading hosts files (:mod:`.loader`), checking
their values (:mod:`.validate`) and the units they are written in (:mod:`.units`)."""
