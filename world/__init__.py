"""4D world model: tri-plane reconstruction and the generation loop (issues #8, #9)."""
