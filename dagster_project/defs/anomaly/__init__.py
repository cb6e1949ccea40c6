"""Assets of anomaly scores and active-learning rankings."""
