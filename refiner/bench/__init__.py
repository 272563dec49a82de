"""The benchmark: refiner against stock KerasTuner, Optuna and bayes_opt on problems with known optima."""
