"""The knowledge base: FAQ content and facts (files), their loader, and the matcher that answers from them."""
