"""The pure-Python backend: the test oracle of micrograd-cpp and its fallback."""
