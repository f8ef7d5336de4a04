"""Renderers: turn the plain results of objlib's functions into Rich renderables."""
