"""Issue 11 recipe experiments (SC4001 proxy, DREAMS scored once per frozen recipe)."""
