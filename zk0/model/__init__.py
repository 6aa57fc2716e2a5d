"""SmolVLA model: backbone directories, policy factory and the trainable-weight exchange."""
