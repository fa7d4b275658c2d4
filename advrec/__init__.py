"""advrec: attack, defend, certify and measure recommender systems."""
__version__ = "0.1.0"
