"""Perceptual user studies: 2AFC side-by-side trials, a web app that stores answers, and analysis."""
