"""Import of other systems' workflow files into our workflow format (Scipion's for now)."""
