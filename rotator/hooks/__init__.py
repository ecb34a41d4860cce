"""Per-policy hooks that help consumers pick up a new key: run after store and after revoke.

``runner`` decides which hooks are still owed for a rotation and runs them;
``webhook`` and ``kubernetes`` each perform one kind. A hook never fails nor
undoes a rotation: by the time it runs the new key is already in Vault.
"""
