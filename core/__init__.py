"""ChestMNIST Resolution Explorer core library: data, models, training, metrics, thresholds, saliency, runs.

Nothing here imports Streamlit; every function works from a notebook or the command line.
"""
