"""coverage_serving: batch serving of MLflow-registered models into warehouse prediction tables."""
