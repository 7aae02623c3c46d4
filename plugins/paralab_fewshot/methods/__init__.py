"""Episodic methods: what the ``episodic`` protocol calls for each meta-batch of episodes."""
