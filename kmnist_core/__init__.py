"""KMNIST Lab engine: data, configuration, training, jobs, run store; Streamlit-free."""
