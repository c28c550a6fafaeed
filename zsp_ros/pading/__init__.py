"""PADing stages 2-3: losses, synthesis of unseen embeddings, classifier retraining."""
