"""The world generator and the generate → reconstruct → guide loop.

generator (the conditional RGB-D U-Net), data (training examples), training (the
teacher), distill (the DMD student), checkpoint, mmpl and rollout (schedules and the
segment-by-segment stream), memory (guidance rendered from world.reconstruction), node
(the world node), cli (`warmloop train explore`, `warmloop distill`).
"""
