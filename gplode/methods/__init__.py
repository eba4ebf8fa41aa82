"""How the features are computed, written once over devices: the direct k-sum
(:mod:`.direct`), the particle mesh (:mod:`.mesh`), the free-space pair sum
(:mod:`.pair_sum`), the analytic k = 0 and centre terms (:mod:`.corrections`), and the
:class:`~.pipeline.Pipeline` that routes and batches structures through them."""
