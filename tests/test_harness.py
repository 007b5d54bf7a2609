"""The harness's own services are real: the Docker engine runs the local base image."""


def test_base_image_runs_debian_bookworm(docker_client, base_image):
    output = docker_client.containers.run(
        base_image, ["cat", "/etc/debian_version"], remove=True
    ).decode()
    assert output.startswith("12.")
    image = docker_client.images.get(base_image)
    assert image.attrs["Config"]["Cmd"] == ["bash"]
    assert any(e.startswith("PATH=/usr/local/sbin") for e in image.attrs["Config"]["Env"])
