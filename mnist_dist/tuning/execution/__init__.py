"""How trials run on Ray: the embedded Ray or a cluster, resources, the searcher, the scheduler, the Optuna storage, signals."""
