"""Training: windows, the six hybrid architectures, trainer and TPE search (torch, torch-geometric, optuna)."""
