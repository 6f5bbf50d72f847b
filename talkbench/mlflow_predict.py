"""The code the talkbench MLflow model is logged from (MLflow's models-from-code): on
``mlflow.pyfunc.load_model`` MLflow runs this file, which imports the installed talkbench. Nothing of the
model is pickled; its weights and settings are the files of its ``bundle`` artifact."""

from talkbench.mlflow_model import set_code_model

set_code_model()
