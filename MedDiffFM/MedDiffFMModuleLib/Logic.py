"""The module's logic: scene -> temporary files -> ``meddifffm`` process -> new nodes.

Usable from the panel (non-blocking: ``startTask`` returns a :class:`Job` that the panel polls
with a ``qt.QTimer``, then ``finishTask``) and from the Python console (blocking ``denoise()``,
``anomalyMap()``, ... that return the new node). No ``qt`` import: runs on ``slicer-core``.
"""

import dataclasses
import logging
import os
import random
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

import slicer

from . import SceneIO
from .Dependencies import DependencyChecker, DependencyError
from .I18n import _
from .Job import Job, MedDiffFMModuleError, RunCancelled, TaskRequest, TaskResult
from .Models import LibraryInfo, parseInfoOutput
from .Process import ProcessRunner, defaultCommand, ensureLibraryImportable, libraryRoot, processEnvironment
from .Progress import ProgressUpdate
from .Tasks import (
    Device,
    InputRegion,
    Region,
    Task,
    TaskOptions,
    TaskPaths,
    anomalySegmentationName,
    buildBatchArguments,
    buildTaskArguments,
    consoleOptions,
    healthyVolumeName,
    needsMask,
    outputName,
    taskSpec,
)

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_TOKEN_ENV = "MEDDIFFFM_SERVER_TOKEN"  # read by the library's client (MedDiffFMLib.server.auth)


def sameNode(a, b) -> bool:
    """Whether two references name the same MRML node (PythonQt may hand out new wrappers)."""
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.GetID() is not None and a.GetID() == b.GetID() and a.GetScene() is b.GetScene())


def requestFromParameters(parameters) -> TaskRequest:
    """The run described by the panel's parameter node (any object with its attributes)."""
    task = Task(parameters.task)
    options = TaskOptions(
        strength=parameters.strength,
        steps=parameters.steps,
        seed=parameters.seed,
        region=Region(parameters.region),
        inputRegion=InputRegion(parameters.inputRegion),
        threshold=parameters.threshold if (task is Task.ANOMALY and parameters.useThreshold) else None,
        factorZ=parameters.factorZ,
        model=parameters.model or None,
        device=Device(parameters.device),
    )
    mask = needsMask(task)
    return TaskRequest(
        task=task,
        inputVolume=parameters.inputVolume,
        anatomyVolume=parameters.anatomyVolume if task is Task.SYNTHESIZE else None,
        segmentationNode=parameters.segmentationNode if mask else None,
        segmentId=(parameters.segmentId or None) if mask else None,
        outputVolume=parameters.outputVolume,
        options=options,
    )


def _applicationLogicOrNone():
    try:
        from slicer import app
    except ImportError:
        return None
    try:
        return app.applicationLogic()
    except Exception:  # noqa: BLE001 - no application logic without the GUI
        return None


def _processEventsOrNone():
    try:
        from slicer import app
    except ImportError:
        return None
    return app.processEvents


def _temporaryRoot() -> str:
    try:
        from slicer import app

        path = app.temporaryPath
        if path and os.path.isdir(path):
            return path
    except (ImportError, AttributeError):
        pass
    return tempfile.gettempdir()


class Logic:
    """The MedDiffFM logic (``MedDiffFMLogic`` in MedDiffFM.py adds Slicer's scripted-logic base).

    :param command: the ``meddifffm`` command as a list (default ``PythonSlicer -m MedDiffFMLib.cli``).
        Tests inject a fake CLI here.
    :param scene: default ``slicer.mrmlScene`` at call time.
    :param applicationLogic: for showing results in the slice views (default Slicer's).
    :param dependencyChecker: checks torch/monai before the first run of the default command.
    :param confirm: ``text -> bool`` asked before installing anything (default: a Slicer dialog).
    """

    def __init__(self, command: Optional[Sequence[str]] = None, scene=None, applicationLogic=None,
                 tempRoot: Optional[str] = None, dependencyChecker: Optional[DependencyChecker] = None,
                 confirm: Optional[Callable[[str], bool]] = None, env: Optional[dict] = None,
                 processEvents: Optional[Callable[[], None]] = None, moduleDir: str = MODULE_DIR):
        self.libraryRoot = ensureLibraryImportable(moduleDir) or libraryRoot(moduleDir)
        self.usesDefaultCommand = command is None
        self.command = list(command) if command is not None else defaultCommand()
        self._scene = scene
        self._applicationLogic = applicationLogic
        self.tempRoot = tempRoot
        self.dependencyChecker = dependencyChecker or DependencyChecker()
        self.confirm = confirm
        self.extraEnv = dict(env or {})
        self.processEvents = processEvents
        self.lastResult: Optional[TaskResult] = None
        self.libraryInfo: Optional[LibraryInfo] = None
        self.serverToken: Optional[str] = None
        """The token of the server runs go to (``TaskOptions.server``): passed to the process in
        ``$MEDDIFFFM_SERVER_TOKEN``, never on its command line (visible in ``ps``)."""

    # -- collaborators ---------------------------------------------------------------------

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def applicationLogic(self):
        return self._applicationLogic if self._applicationLogic is not None else _applicationLogicOrNone()

    def _confirm(self, text: str) -> bool:
        if self.confirm is not None:
            return bool(self.confirm(text))
        return bool(slicer.util.confirmOkCancelDisplay(text))

    def ensureDependencies(self) -> None:
        """Check (and, if the user agrees, install) torch and monai. Only for the default command:
        an injected command brings its own environment."""
        if not self.usesDefaultCommand:
            return
        try:
            self.dependencyChecker.ensure(self._confirm)
        except DependencyError as error:
            raise MedDiffFMModuleError(str(error)) from error

    def missingDependencies(self) -> List[str]:
        """Python modules the default command needs and cannot find (asks nothing)."""
        if not self.usesDefaultCommand or self.dependencyChecker.checked:
            return []
        return self.dependencyChecker.missing()

    def _environment(self) -> dict:
        extra = dict(self.extraEnv)
        if self.serverToken:
            extra[SERVER_TOKEN_ENV] = self.serverToken
        return processEnvironment(self.libraryRoot, extra)

    def _newTempDir(self) -> str:
        return tempfile.mkdtemp(prefix="MedDiffFM-", dir=self.tempRoot or _temporaryRoot())

    def _runner(self, args: Sequence[str]) -> ProcessRunner:
        return ProcessRunner(self.command + [str(a) for a in args], env=self._environment())

    # -- validation ------------------------------------------------------------------------

    def validateRequest(self, request: TaskRequest) -> None:
        """Raise :class:`MedDiffFMModuleError` with a clear message for a bad selection."""
        task = Task(request.task)
        spec = taskSpec(task, self.libraryTasks())
        try:
            request.options.validate(task, self.libraryTasks())
        except ValueError as error:
            raise MedDiffFMModuleError(str(error)) from error
        volume = request.inputVolume
        if volume is None and spec.inputRequired:
            raise MedDiffFMModuleError(_("Select an input volume."))
        if volume is not None:
            if not volume.IsA("vtkMRMLScalarVolumeNode") or volume.IsA("vtkMRMLLabelMapVolumeNode"):
                raise MedDiffFMModuleError(_("'{name}' is not a CT volume: select a scalar volume.").format(
                    name=volume.GetName()))
            image = volume.GetImageData()
            if image is None or min(image.GetDimensions()) < 1:
                raise MedDiffFMModuleError(_("The volume '{name}' has no voxel data.").format(name=volume.GetName()))
            if image.GetNumberOfScalarComponents() != 1:
                raise MedDiffFMModuleError(_("'{name}' is a color or vector volume: select a single-channel CT volume.").format(
                    name=volume.GetName()))
        if request.outputVolume is not None and volume is not None and sameNode(request.outputVolume, volume):
            raise MedDiffFMModuleError(_("The output volume must differ from the input: the input is never overwritten. "
                                         "Choose \"Create new volume\"."))
        if needsMask(task, self.libraryTasks()):
            segmentation = request.segmentationNode
            if segmentation is None:
                raise MedDiffFMModuleError(_("Select a segmentation and a segment: draw the region with Segment Editor first."))
            if not request.segmentId or segmentation.GetSegmentation().GetSegment(request.segmentId) is None:
                raise MedDiffFMModuleError(_("Select a segment of '{segmentation}' (draw it with Segment Editor).").format(
                    segmentation=segmentation.GetName()))

    # -- one task --------------------------------------------------------------------------

    def startTask(self, request: TaskRequest, onProgress: Optional[Callable[[ProgressUpdate], None]] = None,
                  onLog: Optional[Callable[[str], None]] = None) -> Job:
        """Validate, write the inputs to a temporary folder and start the process. Never blocks
        for the run itself. Raises :class:`MedDiffFMModuleError` for a bad selection."""
        request = dataclasses.replace(request, task=Task(request.task))
        self.validateRequest(request)
        self.ensureDependencies()
        task = request.task
        options = request.options.normalized()
        if options.seed is None:
            # "random": a new seed each run, passed explicitly and reported so the run can be repeated
            options = dataclasses.replace(options, seed=random.SystemRandom().randrange(0, 2**31 - 1))
        tempDir = self._newTempDir()
        try:
            paths = TaskPaths(output=os.path.join(tempDir, "output.nrrd"))
            if request.inputVolume is not None:
                if task is Task.SYNTHESIZE:
                    paths.reference = os.path.join(tempDir, "reference.nrrd")
                    SceneIO.writeVolume(request.inputVolume, paths.reference)
                else:
                    paths.input = os.path.join(tempDir, "input.nrrd")
                    SceneIO.writeVolume(request.inputVolume, paths.input)
            if task is Task.SYNTHESIZE and request.anatomyVolume is not None:
                paths.anatomy = os.path.join(tempDir, "anatomy.nrrd")
                SceneIO.writeVolume(request.anatomyVolume, paths.anatomy)
            if needsMask(task, self.libraryTasks()):
                paths.mask = os.path.join(tempDir, "mask.nrrd")
                SceneIO.writeSegmentMask(request.segmentationNode, request.segmentId, request.inputVolume, paths.mask)
            if task is Task.ANOMALY:
                # The library cuts at the model's calibrated threshold when none is given.
                if options.threshold is not None or self.calibratedAnomalyThreshold(options.model) is not None:
                    paths.anomalyMask = os.path.join(tempDir, "anomaly-mask.nrrd")
                if request.keepHealthy:
                    paths.healthy = os.path.join(tempDir, "healthy.nrrd")
            args = buildTaskArguments(task, paths, options, tasks=self.libraryTasks())
            job = Job(self._runner(args), tempDir=tempDir, request=request, paths=paths,
                      onProgress=onProgress, onLog=onLog)
            job.seed = options.seed
            logging.info("MedDiffFM: %s", " ".join(job.command))
            job.runner.start()
        except SceneIO.SceneError as error:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise MedDiffFMModuleError(str(error)) from error
        except OSError as error:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise MedDiffFMModuleError(_("Could not start MedDiff-FM ({command}): {error}").format(
                command=" ".join(self.command), error=error)) from error
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        return job

    def finishTask(self, job: Job) -> TaskResult:
        """After the process ended: import the results into the scene, delete the temporary files.

        Raises :class:`RunCancelled` or :class:`MedDiffFMModuleError` (the library's message);
        then the scene is unchanged.
        """
        try:
            job.poll()
            if job.cancelled:
                raise RunCancelled()
            if not job.isFinished():
                raise MedDiffFMModuleError(_("The MedDiff-FM process is still running."))
            if not job.succeeded:
                raise MedDiffFMModuleError(job.errorMessage)
            if not os.path.isfile(job.paths.output):
                raise MedDiffFMModuleError(_("MedDiff-FM finished but wrote no result ({path}).").format(
                    path=job.paths.output))
            result = self._importResults(job)
            result.seconds = (job.runner.endTime or time.monotonic()) - (job.runner.startTime or time.monotonic())
            result.seed = job.seed
            self.lastResult = result
            return result
        finally:
            job.finalized = True
            job.cleanup()

    def _importResults(self, job: Job) -> TaskResult:
        request = job.request
        task = request.task
        scene = self.scene
        inputVolume = request.inputVolume
        added = []
        try:
            name = outputName(task, inputVolume.GetName() if inputVolume is not None else None)
            isNew = request.outputVolume is None
            volume = SceneIO.importResultVolume(scene, job.paths.output, name, geometryNode=inputVolume,
                                                outputNode=request.outputVolume)
            if isNew:
                added.append(volume)
            SceneIO.placeBeside(scene, volume, inputVolume)
            result = TaskResult(outputVolume=volume)
            if task is Task.ANOMALY:
                threshold = request.options.normalized().threshold
                if threshold is None:
                    threshold = self.calibratedAnomalyThreshold(request.options.model)
                SceneIO.showAsColorOverlay(scene, volume, threshold)
                if job.paths.anomalyMask and os.path.isfile(job.paths.anomalyMask):
                    segmentation = SceneIO.addSegmentationFromMask(
                        scene, job.paths.anomalyMask, inputVolume, anomalySegmentationName(inputVolume.GetName()),
                        _("Anomaly"))
                    added.append(segmentation)
                    SceneIO.placeBeside(scene, segmentation, inputVolume)
                    result.segmentationNode = segmentation
                if job.paths.healthy and os.path.isfile(job.paths.healthy):
                    healthy = SceneIO.importResultVolume(scene, job.paths.healthy, healthyVolumeName(inputVolume.GetName()),
                                                         geometryNode=inputVolume)
                    added.append(healthy)
                    SceneIO.placeBeside(scene, healthy, inputVolume)
                    SceneIO.copyWindowLevel(healthy, inputVolume)
                    result.healthyVolume = healthy
                SceneIO.showInSliceViews(scene, self.applicationLogic, inputVolume, volume)
                # After the views show the map: the legend's displayable manager shows it only for
                # a volume that is in the view when the legend node is added.
                legend = SceneIO.addColorLegend(volume, _("Anomaly (x healthy)"), "%.1f")
                if legend is not None and isNew:
                    added.append(legend)
            else:
                SceneIO.copyWindowLevel(volume, inputVolume)
                SceneIO.showInSliceViews(scene, self.applicationLogic, volume, None)
            return result
        except Exception as error:
            for node in reversed(added):
                if node.GetScene() is scene:
                    scene.RemoveNode(node)
            if isinstance(error, SceneIO.SceneError):
                raise MedDiffFMModuleError(str(error)) from error
            raise

    def runTask(self, request: TaskRequest, wait: bool = True, onProgress=None, onLog=None):
        """Run a task. Blocking (default): return the :class:`TaskResult`. ``wait=False``: return
        the started :class:`Job` (then ``job.wait()`` and ``logic.finishTask(job)``)."""
        job = self.startTask(request, onProgress=onProgress or self._logProgress(), onLog=onLog)
        if not wait:
            return job
        try:
            job.wait(processEvents=self.processEvents or _processEventsOrNone())
        except KeyboardInterrupt:
            job.cancel()
        return self.finishTask(job)

    @staticmethod
    def _logProgress():
        state = {"stage": None, "percent": -1}

        def log(update: ProgressUpdate):
            percent = update.percent // 10 * 10
            if update.stage != state["stage"] or percent != state["percent"]:
                state["stage"], state["percent"] = update.stage, percent
                logging.info("MedDiffFM: %s", update.text())
        return log

    # -- Python console API (blocking by default, return the new node) --------------------------

    @staticmethod
    def _options(task: Optional[Task] = None, **kwargs) -> TaskOptions:
        try:
            return consoleOptions(task, **kwargs)
        except ValueError as error:
            raise MedDiffFMModuleError(str(error)) from None

    def _run(self, request: TaskRequest, wait: bool):
        outcome = self.runTask(request, wait=wait)
        return outcome.outputVolume if isinstance(outcome, TaskResult) else outcome

    def denoise(self, inputVolume, strength: float = 1.0, steps: Optional[int] = None, seed: Optional[int] = None,
                model: Optional[str] = None, device: Union[str, Device] = "auto", outputVolume=None, wait: bool = True,
                region: Union[str, InputRegion, None] = None):
        """Denoise ``inputVolume``; return the new volume node "<input> denoised". ``strength``: the
        fraction of the estimated noise removed (0..1). ``seed=None``: a new random seed each run
        (``logic.lastResult.seed`` tells which). ``region``: the CT's body region ("chest",
        "abdomen", "head_neck", or "unknown" for none, e.g. a limb); ``None`` lets the library guess
        it (the same in every task that reads a CT)."""
        options = self._options(Task.DENOISE, strength=strength, steps=steps, seed=seed, model=model, device=device,
                                region=region)
        return self._run(TaskRequest(Task.DENOISE, inputVolume=inputVolume, outputVolume=outputVolume, options=options), wait)

    def anomalyMap(self, inputVolume, threshold: Optional[float] = None, steps: Optional[int] = None,
                   seed: Optional[int] = None, model: Optional[str] = None, device: Union[str, Device] = "auto",
                   keepHealthy: bool = False, outputVolume=None, wait: bool = True,
                   region: Union[str, InputRegion, None] = None):
        """Anomaly map of ``inputVolume`` ("<input> anomaly map", shown as a colour overlay above the
        threshold). The voxels above ``threshold`` (map units: times the residual of healthy tissue of the
        same structure), or else above the model's calibrated threshold (when the model list is loaded and
        the model has one), also become the segmentation "<input> anomalies"
        (``logic.lastResult.segmentationNode``)."""
        options = self._options(Task.ANOMALY, threshold=threshold, steps=steps, seed=seed, model=model,
                                device=device, region=region)
        return self._run(TaskRequest(Task.ANOMALY, inputVolume=inputVolume, outputVolume=outputVolume,
                                     options=options, keepHealthy=keepHealthy), wait)

    def synthesize(self, region: Union[str, Region] = "chest", referenceVolume=None, steps: Optional[int] = None,
                   seed: Optional[int] = None, model: Optional[str] = None, device: Union[str, Device] = "auto",
                   outputVolume=None, wait: bool = True, anatomyVolume=None):
        """Synthesize a CT of ``region`` ("synthetic CT", or "<reference> synthesized" on the grid
        of ``referenceVolume``); ``anatomyVolume``, a label map, conditions it and sets the grid (only
        a model trained with anatomy channels takes one: the library refuses it otherwise)."""
        options = self._options(Task.SYNTHESIZE, region=region, steps=steps, seed=seed, model=model, device=device)
        return self._run(TaskRequest(Task.SYNTHESIZE, inputVolume=referenceVolume, anatomyVolume=anatomyVolume,
                                     outputVolume=outputVolume, options=options), wait)

    def superResolve(self, inputVolume, factorZ: Optional[int] = None, steps: Optional[int] = None,
                     seed: Optional[int] = None, model: Optional[str] = None, device: Union[str, Device] = "auto",
                     outputVolume=None, wait: bool = True, region: Union[str, InputRegion, None] = None):
        """Super-resolve ``inputVolume`` along z ("<input> super-resolved"); ``factorZ``: thin slices
        per thick slice (whole number >= 2; ``None`` chooses it from the spacing)."""
        options = self._options(Task.SUPERRES, factorZ=factorZ, steps=steps, seed=seed, model=model, device=device,
                                region=region)
        return self._run(TaskRequest(Task.SUPERRES, inputVolume=inputVolume, outputVolume=outputVolume,
                                     options=options), wait)

    def inpaint(self, inputVolume, segmentationNode, segmentId: str, steps: Optional[int] = None,
                seed: Optional[int] = None, model: Optional[str] = None, device: Union[str, Device] = "auto",
                outputVolume=None, wait: bool = True, region: Union[str, InputRegion, None] = None):
        """Inpaint the region of the segment ("<input> with generated tissue")."""
        options = self._options(Task.INPAINT, steps=steps, seed=seed, model=model, device=device, region=region)
        return self._run(TaskRequest(Task.INPAINT, inputVolume=inputVolume, segmentationNode=segmentationNode,
                                     segmentId=segmentId, outputVolume=outputVolume, options=options), wait)

    def generateLesion(self, inputVolume, segmentationNode, segmentId: str, steps: Optional[int] = None,
                       seed: Optional[int] = None, model: Optional[str] = None, device: Union[str, Device] = "auto",
                       outputVolume=None, wait: bool = True, region: Union[str, InputRegion, None] = None):
        """Generate a lesion in the region of the segment ("<input> with generated lesion")."""
        options = self._options(Task.LESION, steps=steps, seed=seed, model=model, device=device, region=region)
        return self._run(TaskRequest(Task.LESION, inputVolume=inputVolume, segmentationNode=segmentationNode,
                                     segmentId=segmentId, outputVolume=outputVolume, options=options), wait)

    def createRegionSegmentation(self, inputVolume, task: Union[str, Task] = Task.INPAINT):
        """A new segmentation beside ``inputVolume`` with one empty segment to paint the region of an
        inpainting or a lesion in; return ``(segmentationNode, segmentId)``."""
        if inputVolume is None:
            raise MedDiffFMModuleError(_("Select an input volume first: the region is drawn on it."))
        task = Task(task)
        segmentName = _("lesion region") if task is Task.LESION else _("region to inpaint")
        segmentation, segmentId = SceneIO.addEmptySegmentation(
            self.scene, inputVolume, _("{name} {segment}").format(name=inputVolume.GetName(), segment=segmentName),
            segmentName)
        SceneIO.placeBeside(self.scene, segmentation, inputVolume)
        return segmentation, segmentId

    # -- files, models, weights -----------------------------------------------------------------

    def runCommand(self, args: Sequence[str], timeout: Optional[float] = None) -> Job:
        """Run ``meddifffm ARGS`` to the end (blocking); raise with the library's message on failure."""
        job = Job(self._runner(args), kind="command", onProgress=self._logProgress())
        try:
            job.runner.start()
        except OSError as error:
            raise MedDiffFMModuleError(_("Could not start MedDiff-FM ({command}): {error}").format(
                command=" ".join(self.command), error=error)) from error
        returncode = job.wait(processEvents=self.processEvents or _processEventsOrNone(), timeout=timeout)
        if returncode is None:
            job.cancel()
            raise MedDiffFMModuleError(_("'meddifffm {args}' did not finish in {seconds} s.").format(
                args=" ".join(args), seconds=timeout))
        if not job.succeeded:
            raise MedDiffFMModuleError(job.errorMessage)
        return job

    def processBatch(self, paths, outDir: str, task: Union[str, Task], masks: Optional[str] = None,
                     **options) -> List[str]:
        """Run ``meddifffm batch TASK --inputs DIR --out OUTDIR`` (blocking) and return the output files.

        :param paths: a folder of volumes, or a list of files (linked into a temporary folder).
        :param masks: for inpaint/lesion, a folder of masks named like the volumes (``--masks``).
        :param options: ``strength``, ``steps``, ``seed``, ``threshold``, ``factorZ``, ``region`` (synthesis: the
            region synthesised; the other tasks: the CT's, "unknown" for none, left out = guessed), ``model``,
            ``device``.
        """
        task = Task(task)
        self.ensureDependencies()
        os.makedirs(outDir, exist_ok=True)
        stagingDir = None
        try:
            if isinstance(paths, (str, os.PathLike)) and os.path.isdir(paths):
                inputDir = str(paths)
            else:
                files = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
                missing = [f for f in files if not os.path.exists(f)]
                if missing:
                    raise MedDiffFMModuleError(_("Input not found: {paths}").format(paths=", ".join(missing)))
                stagingDir = self._newTempDir()
                inputDir = os.path.join(stagingDir, "inputs")
                os.makedirs(inputDir)
                for path in files:
                    target = os.path.join(inputDir, os.path.basename(path.rstrip("/\\")))
                    try:
                        os.symlink(os.path.abspath(path), target)
                    except (OSError, NotImplementedError):
                        (shutil.copytree if os.path.isdir(path) else shutil.copy2)(path, target)
            try:
                args = buildBatchArguments(task, inputDir, str(outDir), self._options(task, **options),
                                           masksDir=str(masks) if masks else None, tasks=self.libraryTasks())
            except ValueError as error:
                raise MedDiffFMModuleError(str(error)) from error
            job = self.runCommand(args)
            outputs = job.parser.outputs
            if not outputs:
                outputs = sorted(os.path.join(outDir, f) for f in os.listdir(outDir))
            return outputs
        finally:
            if stagingDir:
                shutil.rmtree(stagingDir, ignore_errors=True)

    def startInfo(self) -> Job:
        """Start ``meddifffm info --json`` (non-blocking, for the panel)."""
        job = Job(self._runner(["info", "--json"]), kind="info")
        job.runner.start()
        return job

    def libraryTasks(self) -> Optional[Dict[str, Dict]]:
        """The library's task registry from the last ``meddifffm info --json``; None before it ran
        (``Tasks`` then uses the copy shipped with the module)."""
        return self.libraryInfo.tasks if self.libraryInfo is not None and self.libraryInfo.tasks else None

    def calibratedAnomalyThreshold(self, model: Optional[str]) -> Optional[float]:
        """The anomaly map's calibrated default threshold of ``model`` (empty: the default model), from
        the last ``meddifffm info``; None when unknown or not calibrated."""
        info = self.libraryInfo.model(model) if self.libraryInfo is not None else None
        return None if info is None else info.anomalyThreshold

    def parseInfo(self, job: Job) -> LibraryInfo:
        if not job.succeeded:
            raise MedDiffFMModuleError(job.errorMessage or _("'meddifffm info' failed."))
        try:
            self.libraryInfo = parseInfoOutput(job.stdout)
        except ValueError as error:
            raise MedDiffFMModuleError(str(error)) from error
        return self.libraryInfo

    def listModels(self) -> LibraryInfo:
        """Models known to the library, with checksum status (blocking ``meddifffm info --json``)."""
        self.ensureDependencies()
        return self.parseInfo(self.runCommand(["info", "--json"], timeout=300))

    def importWeights(self, path: str) -> str:
        """Import model weights from a file or folder (offline sites); return the library's report."""
        if not path or not os.path.exists(path):
            raise MedDiffFMModuleError(_("Weights not found: {path}").format(path=path))
        self.ensureDependencies()
        job = self.runCommand(["import-weights", str(path)])
        return "\n".join(line for line in job.parser.logLines if line.strip()) or _("Weights imported.")

    def createTinyModel(self, outDir: str) -> str:
        """Write a randomly initialised tiny model folder (for self-tests) and return its path."""
        self.runCommand(["init-model", "--config", "tiny", str(outDir)])
        return str(outDir)
