"""The user side beyond the calculator: dataset featurisation and stores (:mod:`.dataset`)
and the ``gplode`` command line (:mod:`.cli`)."""
