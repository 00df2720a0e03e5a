"""Run weight-sparse GPTs: the model, checkpoint loading, hooks and interventions, circuits."""
