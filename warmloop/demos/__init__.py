"""`warmloop demo NAME`: the demos, end to end over ZeroMQ, one module each.

manipulation: the sim, the RTI policy and a recorder (launch/manipulation.yaml).
explore: the world node and the reconstruction node as its memory (launch/explore-world.yaml).
"""
