"""Assets of the analysis stage: maps of the embeddings and what they encode."""
