# The Bakeoff operator image (the chart's `image.repository`): the three packages and their pinned
# dependencies, run as a non-root user with a read-only root filesystem (the chart sets both).
#   docker build -t ghcr.io/bakeoff-dev/bakeoff:0.1.0 .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY loadtest loadtest
COPY operator operator
RUN python -m venv /opt/bakeoff && /opt/bakeoff/bin/pip install --no-cache-dir pip==26.3 && \
    /opt/bakeoff/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/bakeoff /opt/bakeoff
ENV PATH=/opt/bakeoff/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["kopf"]
CMD ["run", "--standalone", "-m", "bakeoff_operator.handlers", "--all-namespaces"]
