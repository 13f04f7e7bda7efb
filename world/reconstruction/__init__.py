"""The 4D memory: a SHaDe-style tri-plane field fitted online to RGB-D frames.

field (the model), render (rays and compositing), fit (online fitting), exchange
(field ⇄ TriPlanes message, point clouds), node (the reconstruction node). Never imports
world.generation.
"""
