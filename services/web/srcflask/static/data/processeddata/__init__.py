"""Revisions of documents and the autodocs written from them."""
