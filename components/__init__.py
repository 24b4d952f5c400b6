"""Thin KFP v2 components: parse inputs, call ``poisonlab.steps``, write outputs.

Each module holds one plain function; ``pipelines.poisoning`` turns them into
lightweight components on the configured image. Their bodies run inside the
task, so each imports what it needs there.
"""
