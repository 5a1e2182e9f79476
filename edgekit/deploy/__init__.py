"""Bundles and SSH deployment: ``build_bundle`` (bundle.py), ``deploy_host`` / ``rollback_host`` /
``status_host`` (deploy.py), fleets (fleet.py). The device side is agent.py (stdlib only) and smoke.py."""
