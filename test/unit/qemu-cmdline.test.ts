// The guest kernel's command line: a user's --cmdline that names no console gets the
// serial console the console log reads (a tester's guest showed an empty console).
import test from 'ava'
import { kernelCmdline } from '../../node/dvmm/drivers/qemu.ts'

test('a command line without console= gets console=ttyS0 first; one with a console is kept as given; vgrid\'s own follow', t => {
  t.is(kernelCmdline(undefined, ['vgrid.name=a']), 'console=ttyS0 vgrid.name=a')
  t.is(kernelCmdline('', ['vgrid.name=a']), 'console=ttyS0 vgrid.name=a')
  t.is(kernelCmdline('quiet panic=-1', ['vgrid.name=a']), 'console=ttyS0 quiet panic=-1 vgrid.name=a')
  t.is(kernelCmdline('console=ttyS0 quiet', ['vgrid.name=a']), 'console=ttyS0 quiet vgrid.name=a')
  t.is(kernelCmdline('quiet console=hvc0', []), 'quiet console=hvc0', 'the user\'s own console (then the log is theirs to route)')
  t.is(kernelCmdline('xconsole=1', []), 'console=ttyS0 xconsole=1', 'only a whole console= counts')
})
