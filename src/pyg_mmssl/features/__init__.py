from .text import MissingDependency, default_model, encode_text, read_texts

__all__ = [
    'MissingDependency',
    'default_model',
    'encode_text',
    'read_texts',
]
